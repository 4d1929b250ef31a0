"""Data: MFI-DRC synthesis, the embedded default set, folder datasets, the DataModule, builder and downloads."""
