"""The lake: storage (``store``), manifests (``manifest``), the one partition writer
(``writer``), Arrow schemas (``schema``) and the key checksum (``checksum``).

Importing ``tally.lake`` never imports pyspark (the checksum's Spark form imports it when used).
"""

from tally.lake.manifest import MANIFEST, Manifest
from tally.lake.schema import ARROW_TYPES, arrow_schema, schema_fingerprint
from tally.lake.store import Lake, S3Options, local_root, new_attempt
from tally.lake.writer import PartitionWriter, PushWriter

__all__ = [
    "ARROW_TYPES", "MANIFEST", "Lake", "Manifest", "PartitionWriter", "PushWriter", "S3Options", "arrow_schema",
    "local_root", "new_attempt", "schema_fingerprint",
]
