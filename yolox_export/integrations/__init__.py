"""Drop-ins for training code outside this project (Megvii YOLOX's head)."""
