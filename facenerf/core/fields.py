"""What the renderer, the samplers and the occupancy grid need from a radiance field.

A field maps world points to density and colour and knows nothing of rays. It has two
entries, so that density can be evaluated alone (for sample placement, occupancy-grid
updates, early ray termination) and colour only where it can be seen:

* ``density(points [M, 3]) -> (sigma [M] >= 0, features [M, F])`` - activated density and
  whatever the colour entry needs from the density pass (e.g. the trunk's last hidden layer);
* ``colour(features [M, F], directions [M, 3] unit) -> rgb [M, 3]`` in [0, 1].

Conditioning (codes, expression coefficients) is bound into the field object by the model.
A *density callback* (:data:`DensityFn`) is the density entry alone, ``points -> sigma``; the
samplers and the occupancy grid take one, as nerfacc's ``sigma_fn`` does.

A plain function ``(points, directions) -> (sigma, rgb)`` (:data:`FieldFn`) is accepted
wherever a field is, through :class:`FunctionField`; its density entry calls the function with
a placeholder direction, so only use it for fields whose density does not depend on direction.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from torch import Tensor

DensityFn = Callable[[Tensor], Tensor]  # points [M, 3] world -> sigma [M] >= 0
FieldFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (points, unit dirs) -> (sigma [M], rgb [M, 3])


@runtime_checkable
class Field(Protocol):
    """The field protocol (see the module docstring)."""

    def density(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points [M, 3] -> (sigma [M] >= 0, features [M, F])."""
        ...

    def colour(self, features: Tensor, directions: Tensor) -> Tensor:
        """features [M, F] from :meth:`density`, unit directions [M, 3] -> rgb [M, 3]."""
        ...


class FunctionField:
    """A :class:`Field` made from a ``(points, directions) -> (sigma, rgb)`` function.

    Its features are the points themselves, so :meth:`colour` calls the function again;
    :func:`evaluate` calls it once when density and colour are wanted at the same points.
    """

    def __init__(self, fn: FieldFn):
        self.fn = fn

    def density(self, points: Tensor) -> tuple[Tensor, Tensor]:
        placeholder = points.new_tensor([0.0, 0.0, -1.0]).expand_as(points)  # [M, 3]
        sigma, _ = self.fn(points, placeholder)
        return sigma, points

    def colour(self, features: Tensor, directions: Tensor) -> Tensor:
        return self.fn(features, directions)[1]


def as_field(field: Field | FieldFn) -> Field:
    """``field`` itself when it has ``density`` and ``colour``; a :class:`FunctionField` for a function."""
    if isinstance(field, Field):
        return field
    if callable(field):
        return FunctionField(field)
    raise TypeError(f"expected a field (density + colour entries) or a function, got {type(field).__name__}")


def density_callback(field: Field | FieldFn) -> DensityFn:
    """The density entry of ``field`` as a callback ``points [M, 3] -> sigma [M]``."""
    f = as_field(field)
    return lambda points: f.density(points)[0]


def _check(sigma: Tensor, rgb: Tensor | None, m: int) -> Tensor:
    if sigma.numel() != m or (rgb is not None and rgb.shape != (m, 3)):
        got = f"density {tuple(sigma.shape)}" + ("" if rgb is None else f" and rgb {tuple(rgb.shape)}")
        raise ValueError(f"field returned {got} for {m} points; expected [M] and [M, 3]")
    return sigma.reshape(m)


def evaluate_density(field: Field, points: Tensor) -> tuple[Tensor, Tensor]:
    """``field.density`` with its output checked: points [M, 3] -> (sigma [M], features [M, F])."""
    sigma, features = field.density(points)
    return _check(sigma, None, points.shape[0]), features


def evaluate(field: Field, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Density and colour at the same points: (sigma [M], rgb [M, 3]), outputs checked."""
    if isinstance(field, FunctionField):
        sigma, rgb = field.fn(points, directions)
    else:
        sigma, features = field.density(points)
        rgb = field.colour(features, directions)
    return _check(sigma, rgb, points.shape[0]), rgb
