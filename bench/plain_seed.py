"""The starting point, kept verbatim as the reference for benchmarks (P0, P1).

Only the data loading around it is ours: the same `shapes` images as numpy arrays, one-hot
labels and [ymin, xmin, ymax, xmax] boxes, as the original script expects.
"""

from keras.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from keras.models import Model
from keras.optimizers import Adam


def build_plain_model(num_classes: int = 10) -> Model:
    input_layer = Input(shape=(64, 64, 3))
    conv1 = Conv2D(32, (3, 3), activation='relu', padding='same')(input_layer)
    pool1 = MaxPooling2D(pool_size=(2, 2))(conv1)
    conv2 = Conv2D(64, (3, 3), activation='relu', padding='same')(pool1)
    pool2 = MaxPooling2D(pool_size=(2, 2))(conv2)
    dense1 = Dense(128, activation='relu')(Flatten()(pool2))
    output1 = Dense(num_classes, activation='softmax')(dense1)          # classification head
    dense2 = Dense(256, activation='relu')(Flatten()(pool2))
    output2 = Dense(4, activation='sigmoid')(dense2)           # box head
    model = Model(inputs=input_layer, outputs=[output1, output2])
    model.compile(optimizer=Adam(), loss=['categorical_crossentropy', 'binary_crossentropy'])
    return model


def fit_plain(model, X_train, y_classification_train, y_detection_train, epochs, callbacks=None):
    return model.fit(X_train, [y_classification_train, y_detection_train], epochs=epochs, batch_size=32,
                     verbose=0, callbacks=callbacks)
