"""Analysis: peak statistics, selection, shared tables and result loaders."""
