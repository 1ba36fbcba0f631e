"""One run: prepare (tokenizer, task, model, method), train (one lean loop), generate, the run top to bottom."""
