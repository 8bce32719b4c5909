"""A harness node for scripts/comfy_e2e.sh (not part of densevid; linked into custom_nodes for the run):
counts the TorchScript modules alive in ComfyUI's process and the bytes of their weights, after a gc."""
import gc

import torch


class DensevidE2EProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tag": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, tag):
        return float("nan")

    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def probe(self, tag):
        gc.collect()
        modules = [o for o in gc.get_objects() if isinstance(o, torch.jit.ScriptModule)]
        weights = {}
        for module in modules:
            for p in module.parameters(recurse=False):
                weights[p.data_ptr()] = p.numel() * p.element_size()
        mib = sum(weights.values()) / 2**20
        text = f"{tag}: TorchScript modules alive {len(modules)}, their weights {mib:.1f} MiB"
        return {"ui": {"text": [text]}}


NODE_CLASS_MAPPINGS = {"DensevidE2EProbe": DensevidE2EProbe}
