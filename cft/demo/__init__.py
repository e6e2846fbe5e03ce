"""`cft demo`: the whole life of a run on a laptop CPU, on data the project writes itself."""
