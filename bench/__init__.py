"""peft-bench: measure what each fine-tuning method costs and what it buys."""

__version__ = "0.1.0"
