"""The overrides that make each README recipe a seconds-long run on a generated world."""

TRAIN_OVERRIDES = ["trainer=cpu", "trainer.max_steps=2", "trainer.limit_val_batches=2", "trainer.log_every_n_steps=1",
                   "trainer.check_val_every_n_epoch=1", "logger=csv", "data.num_workers=0"]
POSE_SIZE = {entry: [f"data.{split}.{entry}.{key}=160" for split in ("train", "val")  # by the data config's entry
                     for key in ("longer_side", "depth_pad_size")] for entry in ("megadepth", "synthetic")}
RECIPES = {  # experiment -> the overrides that make README's command a seconds-long run
    "loftr_megadepth": ["model=loftr_tiny", "data.samples_per_scene=1", *POSE_SIZE["megadepth"]],
    "loftr_ot_megadepth": ["model=loftr_tiny", "data.samples_per_scene=1", *POSE_SIZE["megadepth"]],
    "se2_loftr_megadepth": ["model=loftr_tiny", "data.samples_per_scene=1", *POSE_SIZE["megadepth"]],
    "eloftr_megadepth": ["model=eloftr_tiny", "data.samples_per_scene=1", "data.batch_size=1", *POSE_SIZE["megadepth"]],
    "loftr_scannet": ["model=loftr_tiny", "data.samples_per_scene=1", "data.train.scannet.image_size=[160,120]",
                      "data.val.scannet.image_size=[160,120]"],
    "loftr_quadtree_megadepth": ["model=loftr_tiny", "data.samples_per_scene=1", *POSE_SIZE["megadepth"]],
    "loftr_quadtree_scannet": ["model=loftr_tiny", "data.samples_per_scene=1",
                               "data.train.scannet.image_size=[160,120]", "data.val.scannet.image_size=[160,120]"],
    "synthetic": ["world.scenes=4", "world.test_scenes=1", "world.cameras=6", "world.size=[160,120]",
                  "data.samples_per_scene=2", "data.train.synthetic.crop_size=null", *POSE_SIZE["synthetic"],
                  "final_evaluation.max_pairs=2", "final_evaluation.benchmark.resize.longer_side=160"],
    "finetune_inhouse": ["model=loftr_tiny", "data.samples_per_scene=2"],  # image sizes: per data config, in the test
}
RECIPES["se2_synthetic"] = RECIPES["loftr_synthetic"] = RECIPES["affine_synthetic"] = RECIPES["synthetic"]
