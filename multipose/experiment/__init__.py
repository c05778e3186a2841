"""The assembly layer: the only code below the command line that reads an experiment config. It turns a
:class:`~multipose.config.Config` into the settings and objects the core, data, model, training and
evaluation layers take (the ``*_from_config`` factories), and owns the run folder's layout."""
