"""Object detection: the one-stage, YOLO-style detector (`heron detect`).

`train(DetectConfig)` trains on annotated photos (VOC, YOLO or COCO
annotations, found automatically), `predict` and `evaluate` use a finished
run folder, `demo_config` sets up the synthetic shapes demo.
"""

from heron.tasks.detect.recipe import DetectRun, Detector, evaluate, load_detector, predict, train

__all__ = ["DetectRun", "Detector", "train", "predict", "evaluate", "load_detector"]
