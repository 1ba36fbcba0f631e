"""peft-bench: measure what each fine-tuning method costs and what it buys."""

import logging

__version__ = "0.1.0"

# peft imports bitsandbytes (a dependency: model.quantize), which logs on every CPU process that an
# optional faster kernel package ("kernels") is missing; the 4-bit layers work without it (slower),
# so that line says nothing to act on. Only that message is dropped.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(lambda record: "gemm_4bit_forward" not in record.getMessage())
