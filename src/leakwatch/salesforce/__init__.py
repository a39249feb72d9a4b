"""Salesforce: pulling EventLogFile blobs (:mod:`.pull`) and a loopback Salesforce for tests and
drills (:mod:`.sim`).

Importing this package is cheap: simple-salesforce, requests and trustme are imported by the
submodules that need them.
"""
