"""Object detection (`heron detect`): one stage (YOLO-style) or two (R-CNN, Fast R-CNN, Faster R-CNN).

`train(DetectConfig)` trains on annotated photos (VOC, YOLO or COCO
annotations, found automatically) with `config.method`; `predict` and
`evaluate` use a finished run folder of any method.
"""

from heron.tasks.detect.recipe import DetectRun, Detector, evaluate, load_detector, predict, train

__all__ = ["DetectRun", "Detector", "train", "predict", "evaluate", "load_detector"]
