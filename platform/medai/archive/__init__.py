"""The DICOM archive: the index of studies, series and instances, and the object storage behind it."""
