"""Checkpoint formats: read any supported checkpoint safely, recognise its layout from the keys,
convert it to pvtseg's keys and load it with a report.

    from pvtseg.models import create_model, load_checkpoint
    report = load_checkpoint(create_model("pvt_v2_b2_fpn", num_classes=150), "pvt_v2_b2.pth")

Layout of this package (one module per source of checkpoints):

    reader.py        files -> objects: torch.save (weights_only=True only), .safetensors (validated
                     before allocating), Hugging Face folders; unwrapping ({'model': ...},
                     {'state_dict': ...}, DDP 'module.', pvtseg training checkpoints -> EMA weights)
    registry.py      the formats: register_format / detect_format / convert_state_dict / FORMATS
    loading.py       load_checkpoint, LoadReport, the fix-it messages
    rules.py         regex rename tables of the PVT-family formats
    pvtseg.py        pvtseg's own state_dict()
    pvt_official.py  whai362/PVT releases (v1, v2) and NVlabs SegFormer ImageNet MiT encoders
    mmseg.py         mmsegmentation: official PVT Semantic FPN, NVlabs SegFormer
    hf.py            Hugging Face Pvt / PvtV2 / Segformer (4.x Hub names and 5.x names)
    timm.py          timm pvt_v2_*
    family.py        shared machinery of the Swin / MobileViT / DAT formats
    swin.py mobilevit.py dat.py   Hugging Face and official releases of those backbones

Formats are recognised from the keys, never from the file name. Conversion goes through one
canonical namespace, the segmentor's state dict:
    backbone.stages.{i}....                     the pyramid (own layout, see pvt_v1 / pvt_v2)
    backbone.cls_token / backbone.norm.* / backbone.head.*   classification-only parts
    head.*                                      segmentation head (SemanticFPN or SegFormerHead)
A classifier/backbone model sees the same keys without the `backbone.` prefix.
"""

# The format modules register themselves on import; detection order is each one's priority.
from . import dat, hf, mmseg, mobilevit, pvt_official, pvtseg, swin, timm  # noqa: F401
from .family import convert_family, detect_family_format, to_canonical
from .loading import LoadReport, guess_architecture, load_checkpoint
from .reader import (TRAINING_FORMAT, is_training_checkpoint, read_checkpoint, read_safetensors,
                     trained_model_name, unwrap_state_dict)
from .registry import (FORMATS, Converted, convert_state_dict, detect_format, register_format,
                       unregister_format)

__all__ = ["FORMATS", "LoadReport", "Converted", "load_checkpoint", "read_checkpoint", "read_safetensors",
           "unwrap_state_dict", "detect_format", "convert_state_dict", "guess_architecture", "register_format",
           "unregister_format", "TRAINING_FORMAT", "is_training_checkpoint", "trained_model_name",
           "detect_family_format", "convert_family", "to_canonical"]
