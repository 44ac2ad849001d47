"""Writers of what leaves the cache: projector files, word2vec-format vectors, the predict bundle."""
