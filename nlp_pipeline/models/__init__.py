"""Pure torch models: the RNN encoder (LSTM | GRU with AWD dropouts), heads, batching."""
