"""PyTorch reference for `forge train vae`: pytorch/examples vae/main.py on Fashion-MNIST.

Same data and split as Forge (the IDX train set, 60,000 images, for training; t10k, 10,000, held
out), pixels byte/255 in [0, 1], MLP 784-400-(20,20) / 20-400-784, ReLU, sigmoid output,
loss = BCE(sum) + KL, Adam lr 1e-3, batch 128, train batches reshuffled every epoch (last partial
batch kept, as DataLoader does), test batches in order, one reparameterisation sample per image
in both loops. Seed policy: one fixed seed (1) for weights, shuffling and noise, as in the example.

  /work/torch-venv/bin/python bench/train_vae_reference.py --threads 2 --csv ref_vae_fashion.csv
"""
import argparse
import csv
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">u4")
    assert magic == 2051, f"{path}: not an IDX image file"
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 1, rows, cols)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--csv", default=None, help="write epoch, train and test -ELBO and wall times here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = torch.from_numpy(read_idx_images(f"{args.data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255)
    test = torch.from_numpy(read_idx_images(f"{args.data}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rows = []
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        train_loss = 0.0
        order = torch.randperm(len(train))
        for i in range(0, len(train), args.batch):
            data = train[order[i:i + args.batch]]
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        train_avg = train_loss / len(train)
        train_s = time.time() - t0
        print(f"====> Epoch: {epoch} Average loss: {train_avg:.4f}")
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i in range(0, len(test), args.batch):
                data = test[i:i + args.batch]
                recon_batch, mu, logvar = model(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
        test_avg = test_loss / len(test)
        print(f"====> Test set loss: {test_avg:.4f}   (epoch {train_s:.1f} s train, {time.time() - t0:.1f} s with test)")
        rows.append((epoch, train_avg, test_avg, train_s, time.time() - start))
    print(f"total {time.time() - start:.1f} s, torch {torch.__version__}, {args.threads} threads")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_neg_elbo", "test_neg_elbo", "epoch_train_s", "wall_s"])
            for r in rows:
                w.writerow([r[0], f"{r[1]:.4f}", f"{r[2]:.4f}", f"{r[3]:.2f}", f"{r[4]:.2f}"])


if __name__ == "__main__":
    main()
