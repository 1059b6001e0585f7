"""Analysis: peak statistics, selection, influence, write scores, causal checks, signatures."""
