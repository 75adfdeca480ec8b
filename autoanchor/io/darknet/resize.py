"""Box sizes in pixels of darknet's network input: stretched, or darknet's ``letter_box``."""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.boxes import BoxSizes
from ...core.validate import check_device, check_float

__all__ = ["darknet_pixel_wh"]


def darknet_pixel_wh(
    boxes: BoxSizes, width: int, height: int, *, letter_box: bool = False, device: torch.device | str | None = None
) -> Tensor:
    """Box sizes in pixels of darknet's ``width x height`` network input.

    Darknet stretches every image to ``width x height`` (so a box keeps its fraction
    of the image on each side, whatever the image's shape); with ``letter_box=1`` it
    pads the image to the network's aspect ratio first, which scales both sides by
    ``min(width / image width, height / image height)``. Neither is yolov5's
    letterbox (:meth:`BoxSizes.pixel_wh`), which scales the long side to one size.

    Args:
        boxes: the dataset's image sizes and normalised box sizes.
        width: network input width in pixels (``[net] width``).
        height: network input height in pixels.
        letter_box: darknet's ``letter_box=1``.
        device: where the result lives; defaults to the CPU.

    Returns:
        Tensor[N, 2] float32, box (width, height) in pixels of the network input.
    """
    for name, value in (("width", width), ("height", height)):
        check_float(name, value, low=0, low_open=True, what="(pixels)")
    device = check_device(device) or torch.device("cpu")
    wh = torch.as_tensor(boxes.wh, dtype=torch.float64, device=device)
    network = torch.tensor([width, height], dtype=torch.float64, device=device)
    if not letter_box:
        return (wh * network).float()
    shapes = torch.as_tensor(boxes.shapes, dtype=torch.float64, device=device)
    scale = (network / shapes).amin(1, keepdim=True)  # [I,1]
    index = torch.as_tensor(boxes.image_index, device=device)
    return (wh * (shapes * scale)[index]).float()
