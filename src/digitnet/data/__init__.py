"""Data: IDX files, datasets by name, and user images put into MNIST form."""

from digitnet.data.datasets import Dataset, load_dataset
from digitnet.data.idx import read_idx, write_idx

__all__ = ["Dataset", "load_dataset", "read_idx", "write_idx"]
