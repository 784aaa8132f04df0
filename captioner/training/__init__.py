"""Training and evaluation: Karpathy-format datasets, cached features, cross-entropy and
self-critical training, scores (BLEU, CIDEr-D) and the retrieval baseline."""
