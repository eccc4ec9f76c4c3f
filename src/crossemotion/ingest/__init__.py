"""Ingest: archives -> MELD index and text -> clips -> faces; IFEED members traced to MELD.

Sub-packages follow the data flow: ``archives`` (download, unpack), ``meld``
(annotations, text, index), ``video`` (decode), ``faces`` (detect, crop),
``ifeed`` (members, alignment, leakage); ``manifest`` is shared by all.
"""
