"""Pure tensor functions without state: box arithmetic and NMS (`heron.ops.boxes`), anchor shapes by
k-means (`heron.ops.anchors`), and RoI max pooling (`heron.ops.roi`)."""
