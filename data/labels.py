"""`IGNORE_INDEX`: the label of a position that no loss scores (a prompt token, padding, a window's context).

-100 is the default `ignore_index` of PyTorch's `cross_entropy`, which transformers' losses and this repository's
models follow; the data steps that write labels and the trainers that count scored tokens read it from here.
"""

IGNORE_INDEX = -100
