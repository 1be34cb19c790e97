"""Source extractors: each lands one dataset for one data interval in the raw zone."""
