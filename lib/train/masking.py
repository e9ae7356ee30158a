"""Transitional (issue 22): the masking module is `lib.core.masking`. This name stays only for
`lib.train.sft`, whose rewrite is in flight on another branch; delete it once sft imports
`lib.core.masking` directly."""
from lib.core.masking import encode_records, ensure_pad_token  # noqa: F401
