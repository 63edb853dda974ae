"""DAT (Deformable Attention Transformer) checkpoints -> pvtseg's DAT keys (models/dat.py).

    official_dat   LeapLabTHU/DAT CVPR 2022 classification releases (patch_proj,
                   stages.i.attns / mlps / layer_norms, down_projs, cls_norm, cls_head), and the
                   same keys under `backbone.` with per-level `norms.{i}.norm` (mmseg segmentation code)

The 1x1 stage projections (an Identity in every released config), recomputed buffers and
mmseg heads are dropped.
"""

from __future__ import annotations

import re
from typing import Mapping

from .family import FamilyConverted, KeyCollector, StateDict, drop_buffer_or_mmseg_head, register_family, strip_prefixes
from .reader import unwrap_state_dict
from .registry import any_key


def detect(sd: StateDict) -> bool:
    return any_key(sd, r"^patch_proj\.0\.weight$") and any_key(sd, r"^stages\.0\.(layer_norms|attns|mlps)\.")


def convert_own(sd: StateDict) -> FamilyConverted:
    sd, names = strip_prefixes(sd, ("backbone.",))
    out = KeyCollector(names)
    for k, v in sd.items():
        if drop_buffer_or_mmseg_head(out, k):
            continue
        if re.match(r"^stages\.\d\.proj\.", k):
            out.drop(k, "1x1 stage projection, an Identity in every released DAT config")
        elif not _stage_key(out, sd, k, v):
            m = re.match(r"^down_projs\.(\d)\.(.*)$", k)
            if m:
                out.put(f"stages.{m.group(1)}.downsample.{m.group(2)}", k, v)
            elif k.startswith("cls_norm."):
                out.put("norms.3." + k[len("cls_norm."):], k, v)
            else:
                out.put(k, k, v)
    stem = out.require("patch_proj.0.weight", "official DAT")
    out.identity_norms([0, 1, 2, 3], lambda i: f"norms.{i}.norm", lambda i: stem.shape[0] * 2 ** i, stem)
    return out.result("official DAT")


def _stage_key(out: KeyCollector, sd: StateDict, k: str, v) -> bool:
    """stages.i.layer_norms / attns / mlps keys -> stages.i.blocks.j.*; False for any other key."""
    m = re.match(r"^stages\.(\d)\.layer_norms\.(\d+)\.(.*)$", k)
    if m:
        j, which = divmod(int(m.group(2)), 2)
        out.put(f"stages.{m.group(1)}.blocks.{j}.norm{which + 1}.{m.group(3)}", k, v)
        return True
    m = re.match(r"^stages\.(\d)\.(attns|mlps)\.(\d+)\.(.*)$", k)
    if not m:
        return False
    rest = m.group(4)
    if m.group(2) == "attns" and f"stages.{m.group(1)}.attns.{m.group(3)}.proj_qkv.weight" in sd:
        rest = re.sub(r"^proj_qkv\.", "qkv.", re.sub(r"^proj_out\.", "proj.", rest))  # L/S: Swin's names
    part = "attn" if m.group(2) == "attns" else "mlp"
    out.put(f"stages.{m.group(1)}.blocks.{m.group(3)}.{part}.{rest}", k, v)
    return True


def convert_official_dat(sd: Mapping) -> StateDict:
    """Official / mmseg DAT checkpoint (any wrapper) -> pvtseg DAT classifier keys."""
    return convert_own(unwrap_state_dict(sd)).tensors


register_family("official_dat", "LeapLabTHU/DAT CVPR 2022 release (patch_proj, stages.i.attns/mlps/layer_norms, "
                                "down_projs, cls_norm, cls_head)", detect, convert_own, 120)
