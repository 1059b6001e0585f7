"""Attribution: influence (exact DLA, act×grad), targets, trace, causal checks, write scores."""
