"""Drop-ins for training code outside this project: Megvii YOLOX's head (``megvii``) and mmdetection's / mmyolo's
``YOLOXHead`` (``mmdet``), each with a two-line ``bind_to_head``."""
