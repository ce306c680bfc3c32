"""Parsl apps: thin wrappers over pesflow's science functions.

Each app is bound to an executor label of the site config (``pesflow.executors``):

- :mod:`pesflow.apps.surrogate`: ``relax_app`` (python app, label ``surrogate``).
- :mod:`pesflow.apps.dft`: ``dft_app`` (bash app, label ``dft``) and ``submit_dft`` /
  ``dft_result`` to launch a prepared GPAW task and read its outcome.

A Parsl config with these labels must be loaded (``parsl.load(build_config(...))``)
before an app is called. Pass ``site.resource_specification(...)`` as
``parsl_resource_specification``: it is empty on the ThreadPoolExecutor, which refuses any.
"""
