"""Operating schedules: the model, storage, delivery to devices, the preview, the battery model."""
