"""The tutorial's code (../shared/seed/000_619514ae0427ca80.txt, cells 2–13) with only its
imports changed, as a script:

    python examples/tutorial_keras.py

It trains the 784-64-64-10 MLP for the tutorial's 5 epochs at batch 32, evaluates it on the
10 000 test images, saves and reloads model.h5 (in Keras' format, in a temporary folder) and
prints the first five predictions.
"""

import os
import tempfile

import numpy as np

from digitnet import keras, mnist  # noqa: F401  (was: import mnist / import keras)
from digitnet.keras.layers import Dense  # was: from keras.layers import Dense
from digitnet.keras.models import Sequential  # was: from keras.models import Sequential
from digitnet.keras.utils import to_categorical  # was: from keras.utils import to_categorical

train_images = mnist.train_images()
train_labels = mnist.train_labels()
test_images = mnist.test_images()
test_labels = mnist.test_labels()

train_images = (train_images / 255) - 0.5
test_images = (test_images / 255) - 0.5
train_images = train_images.reshape((-1, 784))
test_images = test_images.reshape((-1, 784))

model = Sequential([
    Dense(64, activation='relu', input_shape=(784,)),
    Dense(64, activation='relu'),
    Dense(10, activation='softmax'),
])
model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
model.fit(train_images, to_categorical(train_labels), epochs=5, batch_size=32, verbose=2)
loss, accuracy = model.evaluate(test_images, to_categorical(test_labels))
print(f"test loss {loss:.4f}  test accuracy {accuracy:.4f}")

path = os.path.join(tempfile.mkdtemp(), "model.h5")
model.save_weights(path)
model = Sequential([
    Dense(64, activation='relu', input_shape=(784,)),
    Dense(64, activation='relu'),
    Dense(10, activation='softmax'),
])
model.load_weights(path)
predictions = model.predict(test_images[:5])
print(np.argmax(predictions, axis=1))  # [7 2 1 0 4]
print(test_labels[:5])  # [7 2 1 0 4]
