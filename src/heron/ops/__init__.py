"""Pure functions without state: box arithmetic, box deltas and NMS (`heron.ops.boxes`), anchor shapes by
k-means (`heron.ops.anchors`), RoI max pooling (`heron.ops.roi`) and selective-search region proposals
(`heron.ops.selective_search`, on numpy images)."""
