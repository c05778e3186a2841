"""The objects of a config: a head of N objects (``[Dataset] MODEL_PATH_DATA`` a list of N) is assembled from N
single-object views of the config, one per object (its model paths, its ``T``, its validation file), so every
single-object factory serves each object unchanged."""

from __future__ import annotations

from multipose.config import Config, num_objects

__all__ = ["object_config", "object_configs"]


def _pick(value: object, n: int) -> object:
    return value[n] if isinstance(value, tuple) else value


def object_config(cfg: Config, n: int) -> Config:
    """Object ``n``'s single-object view of ``cfg``: its ``MODEL_PATH_DATA``, ``MODEL_PATH_LOSS``, ``T``,
    ``VALID_DATA_PATH`` and ``[Evaluation] OBJ_ID`` entry, the plain ``vsd-union`` loss and no classifier; the
    rest as ``cfg``."""
    d, t = cfg.Dataset, cfg.Rendering.T
    values = {("Dataset", "MODEL_PATH_DATA"): _pick(d.MODEL_PATH_DATA, n),
              ("Dataset", "MODEL_PATH_LOSS"): _pick(d.MODEL_PATH_LOSS, n),
              ("Training", "LOSS"): "vsd-union", ("Training", "CLASSIFY_OBJECTS"): False}
    if t is not None and isinstance(t[0], tuple):
        values["Rendering", "T"] = t[n]
    if d.VALID_DATA_PATH:
        values["Dataset", "VALID_DATA_PATH"] = (d.VALID_DATA_PATH[n],)
    if isinstance(cfg.Evaluation.OBJ_ID, tuple):
        values["Evaluation", "OBJ_ID"] = cfg.Evaluation.OBJ_ID[n]
    one = cfg
    for (section, key), value in values.items():
        one = one.with_value(section, key, value, cfg.origin(section, key))
    return one


def object_configs(cfg: Config) -> list[Config]:
    """Every object's single-object view of ``cfg`` (:func:`object_config`), in object order; ``[cfg]`` itself for
    a config of one object."""
    if num_objects(cfg) == 1:
        return [cfg]
    return [object_config(cfg, n) for n in range(num_objects(cfg))]
