"""Under the HF Trainer, gradient accumulation gives the update of one large batch, compute term included."""

import torch
from transformers import Trainer, TrainingArguments

from conftest import tiny_model


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int = 8, seq: int = 10):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 40, (n, seq), generator=generator)
        self.mask = torch.ones_like(self.ids)
        self.labels = self.ids.clone()
        for row in range(n):  # answers of different lengths: micro-batches hold different supervised counts
            self.labels[row, : 3 + row % 5] = -100
        self.mask[0, :2] = 0
        self.labels[0, :2] = -100

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def one_update(tmp_path, batch: int, accumulation: int) -> dict[str, torch.Tensor]:
    model = tiny_model(dtype=torch.float32, depth_mode="online", compute_penalty=0.5).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch}a{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=1.0,
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[], save_strategy="no",
        use_cpu=True, seed=0, dataloader_drop_last=True,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model=model, args=args, train_dataset=Rows()).train()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def test_accumulated_micro_batches_update_like_one_large_batch(tmp_path):
    large = one_update(tmp_path, batch=4, accumulation=1)
    accumulated = one_update(tmp_path, batch=2, accumulation=2)
    moved = [n for n, delta in large.items() if delta.abs().max() > 0]
    assert "model.depth_controller.halting_head.bias" in moved, "the compute term must move the halting head"
    for name in large:
        torch.testing.assert_close(accumulated[name], large[name], rtol=1e-4, atol=1e-6, msg=name)
