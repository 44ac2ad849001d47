"""Generic machinery: keys, stages, the artifact store, the runner, config. Knows nothing of NLP."""
