"""Class model visualisation (Simonyan et al. 2013, Section 2) on a LeNet-5 trained on MNIST."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab import create_model
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.sources import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.viz.class_model import class_model, class_models, plot_class_models
from cnnlab.viz.overlay import to_display


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def _correlations(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every image of a (K, ...) with every image of b (M, ...)."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a @ b.T) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1))


@pytest.fixture(scope="module")
def lenet_class_models(trained_lenet):
    model = trained_lenet.model
    params = {k: v.clone() for k, v in model.state_dict().items()}
    images = class_models(model)  # the defaults: steps=200, lr=0.1, l2=0.1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in params.items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and _no_hooks(model)
    return images


def test_each_class_model_is_classified_as_its_class(trained_lenet, lenet_class_models):
    assert lenet_class_models.shape == (10, 1, 32, 32)
    with torch.no_grad():
        probs = trained_lenet.model(lenet_class_models).softmax(dim=1)
    print("\nprobability of its own class:", [round(p, 3) for p in probs.diag().tolist()])
    assert torch.equal(probs.argmax(dim=1), torch.arange(10))


def test_class_models_look_like_their_digits(trained_lenet, lenet_class_models, mnist_data_dir):
    """Recognisable: each image correlates best with the mean training digit of its class.

    Measured (seed 0): all 10 of 10, own-class correlations 0.40-0.77, margins over the
    best other class 0.15-0.48; an untrained LeNet-5: 1 of 10, mean own correlation -0.01.
    """
    _, meta = load_checkpoint(trained_lenet.run_dir)
    train, _ = load_dataset("mnist", mnist_data_dir, download=False)
    x = meta.preprocessing(train.images)  # (60000, 1, 32, 32), model input space
    labels = train.labels
    means = torch.stack([x[labels == c].mean(dim=0) for c in range(10)])  # (10, 1, 32, 32)
    # on what is shown: the mean added back, each image stretched (correlation ignores both)
    shown = to_display(lenet_class_models, meta.preprocessing, stretch=True)
    corr = _correlations(shown, means)  # (class model, mean digit)
    own = corr.diag()
    best_other = (corr - 10 * torch.eye(10)).max(dim=1).values
    print("\ncorrelation with own mean digit:", [round(v, 2) for v in own.tolist()])
    print("margin over the best other digit:", [round(v, 2) for v in (own - best_other).tolist()])
    assert (corr.argmax(dim=1) == torch.arange(10)).sum() >= 8
    assert own.mean() > 0.3
    # the control: an untrained LeNet-5's class models match 1 of 10 (0 to 3 over seeds 0-4)
    torch.manual_seed(0)
    untrained = class_models(create_model("lenet5").eval())
    control = _correlations(untrained, means)
    print("untrained control:", int((control.argmax(dim=1) == torch.arange(10)).sum()), "of 10")
    assert (control.argmax(dim=1) == torch.arange(10)).sum() <= 4
    assert control.diag().mean() < 0.2


def test_ascent_starts_from_zero_and_raises_the_objective(trained_lenet, lenet_class_models):
    model = trained_lenet.model
    assert torch.equal(class_model(model, 3, steps=0), torch.zeros(1, 32, 32))
    with torch.no_grad():
        scores = model(lenet_class_models).diag()
        start = model(torch.zeros(10, 1, 32, 32)).diag()
    objective = scores - 0.1 * lenet_class_models.pow(2).flatten(1).sum(1)
    assert (objective > start + 1).all()
    single = class_model(model, 3)
    torch.testing.assert_close(single, lenet_class_models[3], atol=1e-5, rtol=0)


def test_three_channel_model_mode_and_buffers_are_restored():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4)
    for m in model.modules():  # as if trained: at init every unit sits at ReLU's kink at 0
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.bias, 0.0, 0.1)
            nn.init.normal_(m.running_mean, 0.0, 0.1)
    model.train()  # batch norm in training mode: the ascent must use eval mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = class_models(model, classes=[0, 3], steps=3)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert not images.requires_grad and images.abs().sum() > 0
    assert model.training  # put back in its own mode
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # stats too
    assert all(p.grad is None for p in model.parameters())


def test_class_out_of_range_is_an_error():
    model = create_model("lenet5").eval()
    with pytest.raises(CnnlabError, match=r"classes \[10\]: expected classes in 0..9"):
        class_model(model, 10)
    with pytest.raises(CnnlabError, match=r"classes \[-1\]"):
        class_models(model, classes=[-1])
    with pytest.raises(CnnlabError, match="does not fit"):
        class_model(model, 1, input_size=(1, 28, 28))


def test_plot_class_models_one_axis_per_class():
    images = torch.rand(10, 1, 32, 32)
    fig = plot_class_models(images, [str(c) for c in range(10)], title="LeNet-5")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes] == [str(c) for c in range(10)]
    fig = plot_class_models(torch.rand(3, 3, 8, 8))
    assert len(fig.axes) == 3 and fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    with pytest.raises(CnnlabError, match="2 class names for 3 images"):
        plot_class_models(torch.rand(3, 1, 8, 8), ["a", "b"])
