"""The model: features, training, int8 quantization, the model package, the .tflite reader and the golden reference."""
