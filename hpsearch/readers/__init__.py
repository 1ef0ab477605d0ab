"""The packaged datasets' readers, one module each; importing them registers the datasets
(``hpsearch.data.register``)."""

from hpsearch.readers import cifar10, flowers102, idx  # noqa: F401
