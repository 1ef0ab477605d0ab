"""The packaged datasets, a reader module each; importing this package imports every module
in it, and each registers its datasets (``hpsearch.data.register``): adding a dataset is
adding a file here."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
