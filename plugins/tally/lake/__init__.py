"""The lake: storage (``store``), manifests (``manifest``), the one partition writer
(``writer``), Arrow schemas (``schema``), the key checksum (``checksum``) and the state zone's
validity rules (``state``).

Importing ``tally.lake`` never imports pyspark (the checksum's Spark form imports it when used).
"""

from tally.lake.manifest import MANIFEST, Manifest, commit_id
from tally.lake.schema import ARROW_TYPES, arrow_schema, schema_fingerprint
from tally.lake.state import stale_states, state_path, valid_base
from tally.lake.store import Lake, S3Options, local_root, new_attempt
from tally.lake.writer import PartitionWriter, PushWriter

__all__ = [
    "ARROW_TYPES", "MANIFEST", "Lake", "Manifest", "PartitionWriter", "PushWriter", "S3Options", "arrow_schema",
    "commit_id", "local_root", "new_attempt", "schema_fingerprint", "stale_states", "state_path", "valid_base",
]
