import pytest

from helpers import cuda_available


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    if not cuda_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)
