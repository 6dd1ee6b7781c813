"""Procedural FaceScape-format heads (see :mod:`facenerf.data.synthetic.identity` for the layout).

Modules: ``head`` (grid and shape space), ``expressions`` (the 20 expressions and 68 landmarks),
``texture`` (albedo), ``identity`` (identities, meshes, side-file helpers), ``writer`` (the dataset
files, and :mod:`~facenerf.data.synthetic.degraded_pairs` (degraded-vs-sharp RefineNet pairs).
``python -m facenerf.data.synthetic --ids 4 --out data/`` writes a dataset (options: ``--help``).
"""

from facenerf.data.synthetic.identity import (  # noqa: F401 - the package's public names
    DEFAULT_VERTICES,
    EXPRESSION_STEMS,
    EXPRESSIONS,
    SHAPE_CODE_DIM,
    SyntheticIdentity,
    canonical_landmarks_3d,
    encode_jpeg,
    expression_mesh,
    head_topology,
    id_mapping,
    landmark_indices,
    mean_head_mesh,
    parse_expression_list,
    random_similarity,
    rt_scale_entry,
    sample_identity,
    shoulders,
    texture_image,
)
from facenerf.data.synthetic import expressions as sx  # noqa: F401
from facenerf.data.synthetic import head as sh  # noqa: F401
