r"""Weight aligning (WA; Zhao et al. 2020): remove a class-IL classifier's bias towards new classes.

Trained on new data only, the output layer gives the new classes' weight vectors :math:`w_c` larger
norms than the old ones, and their logits win. After each task WA rescales the new classes' rows,

.. math:: w_c \leftarrow \gamma\, w_c \ \ (c \text{ new}), \qquad
          \gamma = \frac{\operatorname{mean}_{c\ \text{old}} \lVert w_c \rVert}
                        {\operatorname{mean}_{c\ \text{new}} \lVert w_c \rVert},

so that both groups have the same mean norm. A bias is scaled with its row: the new classes' logits
are multiplied by exactly :math:`\gamma`. (Zhao et al. also clip weights to be non-negative during
training; that is not done here.)
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def align_weights(layer: nn.Linear, old: torch.Tensor, new: torch.Tensor) -> float:
    """Rescale the rows ``new`` of ``layer`` to the mean norm of its rows ``old`` (boolean masks).

    Returns :math:`\\gamma`.
    """
    norms = layer.weight.norm(dim=1)
    gamma = norms[old].mean() / norms[new].mean()
    for p in layer.parameters():
        p[new] *= gamma
    return float(gamma)
