"""Analysis: per-layer shapes, parameters, connections and multiply-adds."""
