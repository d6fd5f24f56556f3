"""File bytes on disk, content-addressed (metadata and permissions live in the attachments table)."""
