"""Pure torch models: the RNN encoder (LSTM | GRU with AWD dropouts), heads, batching, training loops.

    architecture.py  ModelConfig, the [model] table (no torch import)
    rnn.py        AwdEncoder, WeightDropRnn, LockedDropout, embedding_dropout, ARCHITECTURE_PRESETS
    heads.py      LanguageModelNet (tied decoder, fused loss), ClassifierNet (concat pooling head), builders
    batching.py   LM streams and BPTT windows; sortish, end-padded classifier batches
    training.py   layer groups, discriminative LRs, unfreezing, schedules, vocab matching, the two loops
    observers.py  observe(obs): who the training loops report steps and epochs to (no torch import)
    device.py     device, threads and mixed-precision choice
    inference.py  rebuild nets from LanguageModel / ClassifierResult artifacts and run them
"""
