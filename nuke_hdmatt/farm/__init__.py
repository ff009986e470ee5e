"""Render-farm job descriptions for existing farm schedulers (we do not run our own farm).

- :mod:`.openjd`: Open Job Description templates (AWS Deadline Cloud), ``hdmatt farm openjd``.
- ``nuke_job``: jobs for Nuke scripts' HDMatt nodes, ``hdmatt farm nuke`` (Nuke side).
"""
