"""How features become words: batched greedy/beam/top-k search, its config, banned words,
consensus reranking and the caption hold."""
