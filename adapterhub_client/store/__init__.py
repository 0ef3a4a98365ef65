"""The local cache: content-addressed blobs, resumable downloads, installed views. No torch."""
