"""PyTorch, eager, the plain training loop of PyTorch's own tutorials (DataLoader, nn.Sequential,
CrossEntropyLoss, Adam): the tutorial's 784-64-64-10 MLP, 5 epochs at batch 32. An optional
fifth argument names the device ("cuda"); as in PyTorch's quickstart, each batch is moved there."""

import sys
import time

import torch
from common import EpochClock, args, load, report, timed_predict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

path, epochs, batch, seed = args()
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
x_train, y_train, x_test, y_test = load(path)
torch.manual_seed(seed)
loader = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                    batch_size=batch, shuffle=True)
model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                      nn.Linear(64, 10)).to(device)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

clock = EpochClock()
t_train = time.perf_counter()
for _ in range(epochs):
    clock.start()
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device != "cpu":
        torch.cuda.synchronize()  # the epoch's kernels are done, not just queued
    clock.stop()
train_seconds = time.perf_counter() - t_train

model.eval()
xt = torch.from_numpy(x_test).to(device)


def predict(x):
    with torch.no_grad():
        return model(x).argmax(1).cpu()  # back on the host, as a caller needs it


acc = (predict(xt).numpy() == y_test).mean()
report(peer="PyTorch (eager)", version=torch.__version__, epoch_seconds=clock.wall,
       epoch_cpu_seconds=clock.cpu,
       train_seconds=train_seconds, test_accuracy=float(acc),
       predict_seconds=timed_predict(predict, xt), threads=torch.get_num_threads(), device=device)
