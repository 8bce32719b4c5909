import atexit
import os
import shutil
import signal
import tempfile

import pytest

from support.helpers import cuda_available, use_private_hf_home

# A shell without job control starts background jobs (`pytest ... &`, nohup in a script) with SIGINT
# ignored, and children inherit that: the Ctrl-C tests (in-process interrupt_main, SIGINT to a CLI
# child) would then test the launcher, not densevid. Give this process, and so its children, Python's
# default Ctrl-C handling back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# densevid's on-disk cache (model hashes) goes to a directory of this run, for the tests and their children
if not os.environ.get("DENSEVID_CACHE_DIR"):
    os.environ["DENSEVID_CACHE_DIR"] = tempfile.mkdtemp(prefix="densevid-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DENSEVID_CACHE_DIR"], True)


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    if not cuda_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def standin_models(tmp_path_factory):
    """Paths of the cheap stand-in TorchScript models (both styles), generated once per test session."""
    from densevid.pipeline.models import save_standin

    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for style in ("tuple", "dict"):
        paths[style] = directory / f"standin_{style}.torchscript"
        save_standin(paths[style], style=style, seed=0)
    return paths


@pytest.fixture(scope="session")
def tuple_model(standin_models):
    import torch
    import torchvision  # noqa: F401  (the stand-ins call torchvision::nms, like the real models)

    return torch.jit.load(str(standin_models["tuple"])).eval()


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch, tmp_path_factory):
    """Tests never reach the hub: offline mode and an empty private cache unless a test sets its own
    (so no test finds a model file another test downloaded, nor the user's own cache)."""
    use_private_hf_home(monkeypatch, tmp_path_factory.mktemp("hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DENSEVID_MODEL_DIR", raising=False)
