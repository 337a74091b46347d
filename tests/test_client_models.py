"""A client as users write one: a word-level language model in the shape of PyTorch's
word_language_model example (embedding, two-layer nn.LSTM / nn.GRU, linear decoder),
trained by truncated BPTT with the hidden state carried and detached between batches,
gradient-norm clipping and plain SGD. Swapping the recurrent module for any trainable
implementation must not change the loss trajectory beyond rounding, and the whole model
must survive torch.save / torch.load, as the example's best-model checkpoint does.
"""

import functools
import io
import math
import random
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import impls

VOCAB, EMB, HID, LAYERS = 24, 16, 32, 2
BPTT, BATCH, BATCHES = 12, 8, 40
LR, CLIP = 5.0, 0.25
RNN_TYPES = {"lstm": "LSTM", "gru": "GRU"}

#: Loss trajectories agree to a few float32 ulps: the implementations differ only in the
#: order of float32 sums (measured: at most 3 ulps, 7e-7 on a loss near 3, after 40 clipped
#: SGD steps); 1e-5 relative is some 40 ulps. A wrong gradient shows well above it: scaling
#: the gradient of nn's own weight_hh_l1 alone by 0.999 moves the trajectory by 3e-5 relative.
#: In float64, against nn in float64, rounding is 1e-15.
LOSS_RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def markov_text(n, seed=0):
    """n tokens of a seeded Markov chain: each word is followed by one of its own three
    successors with probabilities 0.6, 0.3, 0.1."""
    rng = random.Random(seed)
    successors = {w: rng.sample(range(VOCAB), 3) for w in range(VOCAB)}
    word, text = 0, []
    for _ in range(n):
        text.append(word)
        word = rng.choices(successors[word], weights=(6, 3, 1))[0]
    return text


def unigram_entropy(tokens):
    """The loss (nats) of the best model that ignores context: the words' own frequencies."""
    counts = Counter(tokens)
    return -sum(c / len(tokens) * math.log(c / len(tokens)) for c in counts.values())


STREAM = markov_text(BATCH * (BATCHES * BPTT + 1))


class WordLM(nn.Module):
    def __init__(self, rnn_type):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMB)
        self.rnn = getattr(nn, rnn_type)(EMB, HID, num_layers=LAYERS, dropout=0.0)
        self.decoder = nn.Linear(HID, VOCAB)
        self.rnn_type = rnn_type

    def forward(self, tokens, hidden):
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden

    def init_hidden(self, batch):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(LAYERS, batch, HID), weight.new_zeros(LAYERS, batch, HID))
        return weight.new_zeros(LAYERS, batch, HID)


def repackage_hidden(h):
    """Cut the graph between batches (truncated BPTT), keeping the values."""
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


def train(model):
    """Per-batch training losses over the stream, split into BATCH columns."""
    data = torch.tensor(STREAM).view(BATCH, -1).t().contiguous()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    hidden = model.init_hidden(BATCH)
    losses = []
    for i in range(0, data.size(0) - 1, BPTT):
        inputs, targets = data[i:i + BPTT], data[i + 1:i + 1 + BPTT]
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = F.cross_entropy(output.view(-1, VOCAB), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


def initial_model(cell, dtype):
    torch.manual_seed(0)
    return WordLM(RNN_TYPES[cell]).to(dtype)


@functools.cache
def nn_losses(cell, dtype):
    return train(initial_model(cell, dtype))


def dtype_of(impl):
    return torch.float32 if torch.float32 in impl.dtypes else torch.float64


@pytest.mark.parametrize("cell", sorted(RNN_TYPES))
@pytest.mark.parametrize("name", [n for n in impls.names() if impls.get(n).trainable])
def test_language_model_trains_as_with_torch_nn(name, cell):
    impl = impls.get(name)
    dtype = dtype_of(impl)
    model = initial_model(cell, dtype)
    expected = nn_losses(cell, dtype)
    rnn = impl.build(cell, EMB, HID, num_layers=LAYERS, dropout=0.0, dtype=dtype)
    rnn.load_state_dict(model.rnn.state_dict())
    model.rnn = rnn
    losses = train(model)

    assert len(losses) == BATCHES
    torch.testing.assert_close(losses, expected, rtol=LOSS_RTOL[dtype], atol=0)
    # It learns the context: from chance (ln 24) to below any context-free model's loss.
    assert losses[:3].mean() > unigram_entropy(STREAM) > losses[-5:].mean()


@pytest.mark.parametrize("name", impls.names())
def test_language_model_saves_and_loads_whole(name):
    """The example keeps its best model with torch.save(model) and torch.load: the reloaded
    model, recurrent module and all, must predict exactly what the saved one did."""
    impl = impls.get(name)
    dtype = dtype_of(impl)
    model = initial_model("lstm", dtype)
    model.rnn = impl.build("lstm", EMB, HID, num_layers=LAYERS, dtype=dtype)
    inputs = torch.tensor(STREAM[:BPTT * BATCH]).view(BPTT, BATCH)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        expected, _ = model(inputs, model.init_hidden(BATCH))
        got, _ = loaded(inputs, loaded.init_hidden(BATCH))
    assert torch.equal(got, expected)
