"""The one training loop, checkpoints and logging.

Modules: ``trainer`` (:class:`~facenerf.engine.trainer.Trainer`, the loop every model uses),
``checkpoint`` (self-describing, atomically written, safely loaded checkpoints), ``schedules``
(learning-rate schedules), ``logger`` (text log + TensorBoard, imported lazily) and
``distributed`` (multi-process helpers). Import them directly; this package imports nothing.
"""
